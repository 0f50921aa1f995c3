"""The worker's composition root: settings in, a WorkerAgent ready to run out."""

from __future__ import annotations

import os
from pathlib import Path

from gridd.clock import Clock, SystemClock
from gridd.config import WorkerConfig, check_worker_name, host_name
from gridd.protocol.errors import ConfigError, WorkDirInUse
from gridd.resources import machine_cpus, machine_memory_mb, machine_tags
from gridd.worker import host_os
from gridd.worker.agent import WorkerAgent
from gridd.worker.host import make_host_watch
from gridd.worker.job_users import check_dedicated, check_reachable, job_users
from gridd.worker.runner import RunSettings
from gridd.worker.settings import AgentSettings
from gridd.worker.task_runner import load_tasks
from gridd.worker.workdir import check_work_dir, claim_work_dir, make_private_dir

# Where a worker whose jobs run as other users (--run-as, --run-as-pool, root's default) keeps its work dir
# (NAME in it) when given none: not in the broker's data dir (/var/lib/gridd in its unit), which is 0700.
SHARED_WORK_ROOT = Path("/var/lib/gridd-worker")


def make_agent(config: WorkerConfig, token: str, default_work_dir: Path, clock: Clock | None = None) -> WorkerAgent:
    """Build the agent; the work dir is locked for it (WorkDirInUse if another worker holds it) and
    emptied of what a previous run of this worker left behind, if it is this worker's (gridd.worker.workdir;
    WorkDirNotOwned if it is not). A bad name is a ConfigError, and so are job users (gridd.worker.job_users)
    that cannot be had or could not reach the work dir."""
    name = check_worker_name(config.name) if config.name else _default_name()
    users = job_users(config, host_os.effective_uid())
    if users is not None:
        check_dedicated(users)
    tasks = load_tasks(config.tasks, config.slots) if config.tasks else None
    given: str | Path
    if config.work_dir is not None:
        given = config.work_dir
    elif users is not None:  # job users cannot pass through root's home (0700): where daemons keep state
        given = SHARED_WORK_ROOT / name
    else:
        given = default_work_dir / "worker" / name
    # Absolute and normalised: the lock and the bundle cache sit beside it, named after its last component.
    work_dir = Path(os.path.abspath(given))
    check_work_dir(work_dir)  # refused before anything is made beside it
    if users is not None:
        check_reachable(work_dir, users)  # the directories there are already (all of them once made, below)
    lock = _lock(work_dir)
    try:
        # Job users pass through it to their own attempt directories; nobody else enters.
        instance = claim_work_dir(work_dir, 0o700 if users is None else 0o711)
        if users is not None:
            check_reachable(work_dir, users)
        make_private_dir(_bundle_dir(work_dir))
    except BaseException:
        os.close(lock)
        raise
    settings = AgentSettings(
        broker=config.broker,
        token=token,
        name=name,
        host=host_name(),
        slots=config.slots,
        queues=list(config.queues),
        tags={**machine_tags(), **config.tags},  # os and arch always; --tag adds or overrides
        grace_s=config.grace_s,
        # --slots alone behaves as before resources existed: N one-cpu jobs always fit.
        cpus=config.cpus or max(config.slots, machine_cpus()),
        memory_mb=config.memory_mb if config.memory_mb is not None else machine_memory_mb(),
        instance=instance,
        insecure=config.insecure,
    )
    # Each running job holds a thread while it waits for its process; leave room for the rest.
    run = RunSettings(worker=name, work_dir=work_dir, max_output_bytes=config.max_output_bytes, users=users)
    agent = WorkerAgent(settings, run, clock or SystemClock(), tasks=tasks, lock=lock, bundle_dir=_bundle_dir(work_dir))
    agent.watch = make_host_watch(config, agent.job_groups)
    return agent


def _bundle_dir(work_dir: Path) -> Path:
    """Beside the work dir (which is emptied at start; the cache must survive), the worker's alone."""
    return work_dir.with_name(f"{work_dir.name}.bundles")


def _default_name() -> str:
    name = host_name()
    try:
        return check_worker_name(name, given="the host name")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; give the worker --name") from None


def _lock(work_dir: Path) -> int:
    """An exclusive lock beside the work dir, held (by its open file) for as long as the worker runs."""
    fd = host_os.lock_exclusive(work_dir.parent / f"{work_dir.name}.lock")
    if fd is None:
        raise WorkDirInUse(
            f"another worker is running with the work directory {work_dir}; give this one its own --name or --work-dir"
        )
    return fd
