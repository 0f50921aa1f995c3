"""SQLite's schema as numbered migrations, applied in order under PRAGMA user_version.

Rule: a released migration is never edited; a change is a new migration appended to MIGRATIONS, and the
same change, under the same number, to postgresql.MIGRATIONS (tests/broker/test_schema.py checks both).
"""

from __future__ import annotations

import sqlite3

from gridd.protocol.states import JobState

# Job states are written into the scripts from the enum; each script's text stays what it was when it was
# released (tests/broker/test_schema.py holds their digests).
_QUEUED, _RUNNING = f"'{JobState.QUEUED}'", f"'{JobState.RUNNING}'"
# The WHERE of the jobs_finished index as migration 7 (and PostgreSQL's 13) wrote it: released text.
FINISHED_IN_LIST = f"state IN ('{JobState.SUCCEEDED}', '{JobState.FAILED}', '{JobState.CANCELLED}')"
# Its WHERE since migration 15; retention's query repeats it word for word. Comparisons, not an IN list:
# SQLite builds the list's table anew for each row a statement writes to jobs (benchmarks/README.md).
FINISHED_WHERE = f"(state = '{JobState.SUCCEEDED}' OR state = '{JobState.FAILED}' OR state = '{JobState.CANCELLED}')"

MIGRATIONS: list[str] = [
    # 1: jobs, their groups and dependencies, their finished attempts and their captured output.
    f"""
    CREATE TABLE groups (
        id           INTEGER PRIMARY KEY,
        max_running  INTEGER,                      -- NULL: no limit
        submitted_ms INTEGER NOT NULL
    );
    CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY,
        state         TEXT    NOT NULL,
        queue         TEXT    NOT NULL,
        priority      INTEGER NOT NULL,
        max_attempts  INTEGER NOT NULL,
        spec          BLOB    NOT NULL,             -- msgpack JobSpec: argv, env, stdin, timeout
        attempts      INTEGER NOT NULL DEFAULT 0,   -- attempts started
        lease         INTEGER NOT NULL DEFAULT 0,   -- fencing token of the current (or last) lease
        worker        TEXT,
        deadline_ms   INTEGER,                      -- lease deadline while running
        not_before_ms INTEGER NOT NULL DEFAULT 0,   -- queued, but not eligible before (retry delay)
        exit_code     INTEGER,
        reason        TEXT,
        submitted_ms  INTEGER NOT NULL,
        started_ms    INTEGER,
        finished_ms   INTEGER,
        group_id      INTEGER REFERENCES groups (id),
        pending_deps  INTEGER NOT NULL DEFAULT 0,   -- dependencies not yet succeeded (state waiting)
        throttled     INTEGER NOT NULL DEFAULT 0    -- 1: queued, but its group is at --max-running
    );
    -- Leasing reads this index only: throttled and waiting jobs cost nothing until they may run.
    CREATE INDEX jobs_ready ON jobs (queue, priority DESC, id) WHERE state = {_QUEUED} AND throttled = 0;
    CREATE INDEX jobs_group ON jobs (group_id, state, throttled) WHERE group_id IS NOT NULL;
    CREATE TABLE deps (
        job_id INTEGER NOT NULL,                    -- the waiting job
        dep_id INTEGER NOT NULL,                    -- the job it waits for
        PRIMARY KEY (dep_id, job_id)
    ) WITHOUT ROWID;
    CREATE INDEX jobs_delayed ON jobs (not_before_ms) WHERE state = {_QUEUED} AND not_before_ms > 0;
    CREATE INDEX jobs_deadline ON jobs (deadline_ms) WHERE state = {_RUNNING};
    CREATE INDEX jobs_worker ON jobs (worker) WHERE state = {_RUNNING};
    CREATE INDEX jobs_state ON jobs (state, id);
    CREATE TABLE attempts (
        job_id     INTEGER NOT NULL,
        lease      INTEGER NOT NULL,
        attempt    INTEGER NOT NULL,
        worker     TEXT,
        started_ms INTEGER,
        ended_ms   INTEGER NOT NULL,
        exit_code  INTEGER,
        outcome    TEXT    NOT NULL,
        PRIMARY KEY (job_id, lease)
    ) WITHOUT ROWID;
    CREATE TABLE outputs (
        job_id    INTEGER NOT NULL,
        stream    TEXT    NOT NULL,
        data      BLOB    NOT NULL,
        truncated INTEGER NOT NULL,
        PRIMARY KEY (job_id, stream)
    ) WITHOUT ROWID;
    """,
    # 2: Python tasks. A job's lane says which workers may lease it ('' commands: any worker;
    # 'task:MODULE' only workers serving that module), so leasing stays one index range per lane.
    # Results of task jobs, and content-addressed blobs for payloads too large for a frame.
    f"""
    ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN records INTEGER;       -- a batch task: results that must come back
    DROP INDEX jobs_ready;
    CREATE INDEX jobs_ready ON jobs (queue, lane, priority DESC, id) WHERE state = {_QUEUED} AND throttled = 0;
    ALTER TABLE attempts ADD COLUMN code TEXT;         -- the task code's version that ran the attempt
    CREATE TABLE results (
        job_id INTEGER PRIMARY KEY,
        value  BLOB,                                   -- msgpack return value (NULL: in the blob)
        blob   TEXT,
        error  BLOB                                    -- msgpack TaskError of the last attempt that raised
    );
    CREATE TABLE blobs (
        id   TEXT PRIMARY KEY,                         -- sha256 of the content, hex
        size INTEGER NOT NULL,
        have INTEGER NOT NULL                          -- bytes stored so far; == size: complete
    );
    CREATE TABLE blob_chunks (
        blob   TEXT    NOT NULL,
        offset INTEGER NOT NULL,
        data   BLOB    NOT NULL,
        PRIMARY KEY (blob, offset)
    );
    """,
    # 3: code bundles. Each version of a bundle is a manifest (msgpack list of BundleFile) whose files
    # are blobs; versions count 1, 2, 3... per name and are never changed. An attempt records the
    # bundle version ("NAME@N") it ran in.
    """
    CREATE TABLE bundles (
        name      TEXT    NOT NULL,
        version   INTEGER NOT NULL,
        digest    TEXT    NOT NULL,                    -- sha256 of the manifest (gridd.protocol.bundles)
        manifest  BLOB    NOT NULL,
        files     INTEGER NOT NULL,
        bytes     INTEGER NOT NULL,
        pushed_ms INTEGER NOT NULL,
        UNIQUE (name, version)
    );
    ALTER TABLE attempts ADD COLUMN bundle TEXT;
    """,
    # 4: resources. What each job asks for (cpus, MiB of memory), filtered per row while leasing; the
    # columns ride in jobs_ready so that skipping a job too big for the asking worker reads the index only
    # (a covering index).
    # `lanes`: every (queue, lane) that ever held a job (see gridd/broker/matching.py), so a worker's
    # lanes are known without scanning jobs. Never pruned: a retried job may bring an old lane back.
    f"""
    ALTER TABLE jobs ADD COLUMN cpus INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 0;
    DROP INDEX jobs_ready;
    -- state and throttled too: SQLite counts an index as covering only if it holds every column named.
    CREATE INDEX jobs_ready ON jobs (queue, lane, priority DESC, id, cpus, memory_mb, not_before_ms, state, throttled)
        WHERE state = {_QUEUED} AND throttled = 0;
    CREATE TABLE lanes (
        queue TEXT NOT NULL,
        lane  TEXT NOT NULL,
        PRIMARY KEY (queue, lane)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO lanes (queue, lane) SELECT DISTINCT queue, lane FROM jobs;
    """,  # noqa: S608
    # 5: worker identity. A lease is bound to the worker instance it was granted to (the random id the
    # worker keeps in its work dir), not only to its name: only that instance may re-attach, renew, end or
    # give up the lease, so a peer reusing the name while the worker is away cannot take or fail its jobs.
    # A column of the lease's row rather than a table of workers: it is written by the statement that
    # grants the lease, read with the lease by every check, survives a broker restart with it, and a later
    # holder of the name cannot overwrite it. '': granted to an older worker, which sends no instance.
    """
    ALTER TABLE jobs ADD COLUMN instance TEXT NOT NULL DEFAULT '';
    """,
    # 6: partial uploads expire. `touched_ms` is when a piece of the blob last arrived; a blob still
    # arriving (have < size) that nobody wrote to for PARTIAL_BLOB_TTL_MS is dropped (store/blobs.py).
    # Partials from before this migration read as untouched since 1970: the next upload drops them.
    """
    ALTER TABLE blobs ADD COLUMN touched_ms INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX blobs_partial ON blobs (touched_ms) WHERE have < size;
    """,
    # 7: retention (gridd/broker/store/retention.py). Finished jobs are found by when they finished; a
    # blob is removed with the last job that refers to it, so references are indexed: a task job's
    # arguments blob gets a column (filled for older rows from their msgpack spec, where the 64 hex
    # digits follow the key 'args_blob' and a 2-byte str8 header), results by their blob. `meta` keeps
    # the largest job id ever given, so ids are never reused once the newest jobs are purged. From here
    # on `lanes` is pruned (of queues with no job left to lease) and restored by a retry: see
    # Broker.drop_idle_lanes.
    f"""
    ALTER TABLE jobs ADD COLUMN args_blob TEXT;
    UPDATE jobs SET args_blob = CAST(substr(spec, instr(spec, CAST('args_blob' AS BLOB)) + 11, 64) AS TEXT)
        WHERE lane LIKE 'task:%' AND instr(spec, CAST('args_blob' AS BLOB)) > 0;
    CREATE INDEX jobs_args_blob ON jobs (args_blob) WHERE args_blob IS NOT NULL;
    CREATE INDEX results_blob ON results (blob) WHERE blob IS NOT NULL;
    CREATE INDEX deps_job ON deps (job_id);               -- a job's own dependencies (deps' key leads with dep_id)
    CREATE INDEX jobs_finished ON jobs (finished_ms) WHERE {FINISHED_IN_LIST};
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,  # noqa: S608
    # 8: credentials per role (store/tokens.py) and the owner of each job. A token is kept by the sha256
    # of its secret, never the secret; its name is unique (a worker token's name is its worker's name),
    # `queues` is a comma-joined list ('' any queue). `owner` is the name of the credential a job was
    # submitted with; every job from before this migration was submitted with the cluster token, the
    # admin credential, so they belong to 'admin' (a constant default: no row is rewritten).
    """
    CREATE TABLE tokens (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL UNIQUE,
        role          TEXT    NOT NULL,
        queues        TEXT    NOT NULL DEFAULT '',
        secret_sha256 TEXT    NOT NULL UNIQUE,       -- hex
        created_ms    INTEGER NOT NULL,
        last_used_ms  INTEGER,
        expires_ms    INTEGER,                       -- NULL: never
        revoked_ms    INTEGER                        -- NULL: in force
    );
    ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin';
    CREATE INDEX jobs_owner ON jobs (owner, id);
    """,
    # 9: accounting per attempt, as its worker measured it (NULL: not measured: older rows, an expired
    # lease, CPU and memory of Python tasks). CPU in seconds (wait4's rusage of the job's process and the
    # children it waited for); `lent`: 1 if its worker lends a desktop (--when-idle, --window,
    # --idle-probe), NULL unknown. `gridd report` reads attempts by when they ended.
    """
    ALTER TABLE attempts ADD COLUMN wall_ms INTEGER;
    ALTER TABLE attempts ADD COLUMN cpu_user_s REAL;
    ALTER TABLE attempts ADD COLUMN cpu_system_s REAL;
    ALTER TABLE attempts ADD COLUMN max_rss_kb INTEGER;
    ALTER TABLE attempts ADD COLUMN output_bytes INTEGER;
    ALTER TABLE attempts ADD COLUMN lent INTEGER;
    CREATE INDEX attempts_ended ON attempts (ended_ms);
    """,
    # 10: cause-aware retries (gridd/broker/retry_policy.py). `strikes`: JSON text, each failure status
    # ("exit:3", "signal:9", "timeout") -> the different workers it happened on since the job was submitted
    # or last retried by a person (NULL: none); `poison`: 1 once the same status on 3 workers stopped its
    # retries. A person's retry clears both.
    """
    ALTER TABLE jobs ADD COLUMN strikes TEXT;
    ALTER TABLE jobs ADD COLUMN poison INTEGER NOT NULL DEFAULT 0;
    """,
    # 11: idempotent submit (store/keys.py). A submit key is kept per owner (the credential's name), one
    # row for each request of the submit (`part`: a large submit travels in chunks), with the sha256 of
    # the request and the jobs it made: ids first_job .. first_job + jobs - 1 (one submit's ids are
    # consecutive) and their group. Retention removes a key once past expires_ms.
    """
    CREATE TABLE submit_keys (
        owner      TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        part       INTEGER NOT NULL,
        digest     TEXT    NOT NULL,                 -- hex
        first_job  INTEGER NOT NULL,
        jobs       INTEGER NOT NULL,
        group_id   INTEGER,                          -- NULL: the jobs have no group
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (owner, key, part)
    ) WITHOUT ROWID;
    CREATE INDEX submit_keys_expires ON submit_keys (expires_ms);
    """,
    # 12: delayed jobs (submit --at/--in). `start_ms` is a job's start time (NULL: none); a job waits in
    # state 'scheduled' until then, and the broker sleeps until the earliest one, found in jobs_scheduled
    # (state leads, though it is constant there, so that the planner prefers it to jobs_state).
    f"""
    ALTER TABLE jobs ADD COLUMN start_ms INTEGER;
    CREATE INDEX jobs_scheduled ON jobs (state, start_ms) WHERE state = '{JobState.SCHEDULED}';
    """,
    # 13: periodic schedules (store/schedules.py). A slot fires by a conditional UPDATE of next_slot_ms
    # (from the slot due to the one after) in the transaction that submits its job, so each slot fires
    # once whichever broker on the store gets there first. `spec` is the msgpack JobSpec template of its
    # jobs; next_slot_ms NULL: its expression fires no more. schedule_runs keeps each schedule's latest
    # runs, keyed by slot too (a slot cannot make two jobs).
    """
    CREATE TABLE schedules (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL UNIQUE,
        cron          TEXT    NOT NULL,
        tz            TEXT    NOT NULL,
        catch_up      TEXT    NOT NULL,             -- none | last | all
        spec          BLOB    NOT NULL,
        paused        INTEGER NOT NULL DEFAULT 0,
        next_slot_ms  INTEGER,
        last_fired_ms INTEGER,
        owner         TEXT    NOT NULL,
        created_ms    INTEGER NOT NULL
    );
    CREATE INDEX schedules_due ON schedules (next_slot_ms) WHERE paused = 0 AND next_slot_ms IS NOT NULL;
    CREATE TABLE schedule_runs (
        schedule_id INTEGER NOT NULL,
        slot_ms     INTEGER NOT NULL,
        job_id      INTEGER NOT NULL,
        PRIMARY KEY (schedule_id, slot_ms)
    ) WITHOUT ROWID;
    """,
    # 14: gang jobs (submit --gang N, store/gangs.py). `gang`: the job's size (0: an ordinary job); it rides
    # in jobs_ready, which ordinary leasing reads skipping gangs, so that the index still covers that read
    # (see 4). jobs_gangs finds the queued gangs for the dispatcher. A running
    # gang's job row holds rank 0's lease; gang_members holds every member of its current attempt (the job's
    # lease then is `attempt_lease`), with each member's own lease, worker and deadline, and, once it ended,
    # its exit code and output until the attempt ends.
    f"""
    ALTER TABLE jobs ADD COLUMN gang INTEGER NOT NULL DEFAULT 0;
    DROP INDEX jobs_ready;
    CREATE INDEX jobs_ready
        ON jobs (queue, lane, priority DESC, id, cpus, memory_mb, not_before_ms, state, throttled, gang)
        WHERE state = {_QUEUED} AND throttled = 0;
    CREATE INDEX jobs_gangs ON jobs (state, priority DESC, id) WHERE gang > 0;  -- state leads: see 12
    CREATE TABLE gang_members (
        job_id           INTEGER NOT NULL,
        rank             INTEGER NOT NULL,
        attempt_lease    INTEGER NOT NULL,
        lease            INTEGER NOT NULL,
        worker           TEXT    NOT NULL,
        instance         TEXT    NOT NULL,
        host             TEXT    NOT NULL,
        deadline_ms      INTEGER,
        ended            INTEGER NOT NULL DEFAULT 0,
        exit_code        INTEGER,
        stdout           BLOB,
        stderr           BLOB,
        stdout_truncated INTEGER NOT NULL DEFAULT 0,
        stderr_truncated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, rank)
    );
    CREATE INDEX gang_members_worker ON gang_members (worker, instance) WHERE ended = 0;
    CREATE INDEX gang_members_deadline ON gang_members (deadline_ms) WHERE ended = 0;
    """,
    # 15: jobs_finished holds the same rows, its WHERE spelled as comparisons (FINISHED_WHERE): SQLite ran the
    # IN list's "state IN (...)" as a small table built again for every row inserted or changed in jobs,
    # about 2 us each (a quarter of a submitted job's INSERT, benchmarks/README.md).
    f"""
    DROP INDEX jobs_finished;
    CREATE INDEX jobs_finished ON jobs (finished_ms) WHERE {FINISHED_WHERE};
    """,
    # 16: jobs_group ordered as a capped group's throttled jobs are given its free tokens (priority, then
    # id: flow.py), so that the next ones are read from the index, not sorted from every throttled job of
    # the group at each token passed on (23 ms with 100,000 throttled, benchmarks/README.md).
    """
    DROP INDEX jobs_group;
    CREATE INDEX jobs_group ON jobs (group_id, state, throttled, priority DESC, id) WHERE group_id IS NOT NULL;
    """,
]


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version now in force."""
    row = db.execute("PRAGMA user_version").fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise RuntimeError(f"database schema {version} is newer than this gridd ({len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; the version bump rides in the same script so a crash between
        # the two is impossible.
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number:d};\nCOMMIT;")
    return len(MIGRATIONS)
