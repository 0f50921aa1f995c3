"""The store's use cases, each one transaction in one group commit, whatever the database: the table below is
the whole of it. Each use case is a function of the transaction (`Tx`), in the module named for its use case,
made an async method by usecase.use_case, which says whether its commit waits until it is on disk and whether
it is a small read its backend may answer at once. Transitions are conditional UPDATEs (`WHERE id = ? AND
lease = ? AND state = ?`) that transitions.py decides. The backends (sqlite.py, postgres.py) add how a
group commit runs on their database.
"""

from __future__ import annotations

import gridd.broker.store.blobs as blobs
import gridd.broker.store.bundles as bundles
import gridd.broker.store.changes as changes
import gridd.broker.store.control as control
import gridd.broker.store.expiry as expiry
import gridd.broker.store.gangs as gangs
import gridd.broker.store.keys as keys
import gridd.broker.store.lanes as lanes
import gridd.broker.store.leasing as leasing
import gridd.broker.store.reads as reads
import gridd.broker.store.retention as retention
import gridd.broker.store.schedules as schedules
import gridd.broker.store.start_times as start_times
import gridd.broker.store.submit as submit
import gridd.broker.store.tokens as tokens
import gridd.broker.store.why as why
from gridd.broker.store.usecase import Backend, use_case


class UseCases(Backend):
    """Jobs, leases, attempts, outputs, tokens, blobs, bundles and schedules: every use case of interface.Store."""

    # ---- jobs in, and leasing (a lease is not fsynced: one lost with the power is granted again) ------------
    submit_jobs = use_case(submit.submit_jobs, durable=True, changes=changes.submitted)
    submit_keyed = use_case(keys.submit_keyed, durable=True, changes=changes.keyed)
    lease_for = use_case(leasing.lease_for, durable=False, changes=changes.leased, then=leasing.observed)
    renew_leases = use_case(leasing.renew_leases, durable=False)
    # A queued gang read on the event loop: seen early, it is only offered to lease_gangs, which checks again.
    queued_gangs = use_case(gangs.queued_gangs, durable=False, read_now="always")
    lease_gangs = use_case(gangs.lease_gangs, durable=False, changes=changes.leased_gangs, then=gangs.observed)
    # A hint for the dispatcher's timer, read on the event loop (one row, from jobs_delayed): a job seen
    # early is only looked for when that time comes, and one committed after is announced by its commit.
    next_eligible_ms = use_case(leasing.next_eligible_ms, durable=False, read_now="always")
    # A promotion lost with the power is redone at start.
    promote_due = use_case(start_times.promote_due, durable=False, changes=changes.promoted)
    extend_running_leases = use_case(leasing.extend_running_leases, durable=False)
    known_lanes = use_case(lanes.known_lanes, durable=False)
    drop_lanes = use_case(lanes.drop_lanes, durable=False)

    # ---- attempts end ----------------------------------------------------------------------------------------
    # completion.py's, a gang member's result kept with its member first (gangs.py)
    complete_jobs = use_case(gangs.complete_jobs, durable=True, changes=changes.second)
    expire_leases = use_case(expiry.expire_leases, durable=True, changes=changes.ended)
    attach_worker = use_case(expiry.attach_worker, durable=True, changes=changes.second)
    return_leases = use_case(expiry.return_leases, durable=True, changes=changes.returned)

    # ---- control ---------------------------------------------------------------------------------------------
    control_jobs = use_case(control.control_jobs, durable=True, changes=changes.second)
    expand = use_case(control.expand, durable=False)
    purge_finished = use_case(retention.purge_finished, durable=True, changes=changes.purged)
    forget_keys = use_case(keys.forget_keys, durable=False)  # a key lost with the power is removed again

    # ---- reads (a few jobs by key: on the event loop) ---------------------------------------------------------
    get_job = use_case(reads.get_job, durable=False)
    get_jobs = use_case(reads.get_jobs, durable=False, read_now="few")
    list_jobs = use_case(reads.list_jobs, durable=False)
    job_facts = use_case(why.job_facts, durable=False)
    read_output = use_case(reads.read_output, durable=False)
    read_results = use_case(blobs.read_results, durable=False, read_now="few")
    report = use_case(reads.report, durable=False)
    foreign_job = use_case(reads.foreign_job, durable=False)
    job_inputs = use_case(reads.job_inputs, durable=False)
    count_by_queue = use_case(reads.count_by_queue, durable=False)

    # ---- role tokens (their use is not fsynced: a lost one costs a minute) --------------------------------------
    create_token = use_case(tokens.create_token, durable=True)
    list_tokens = use_case(tokens.list_tokens, durable=False)
    revoke_token = use_case(tokens.revoke_token, durable=True, changes=changes.revoked)
    find_token = use_case(tokens.find_token, durable=False, read_now="always")  # one row by a unique key
    touch_tokens = use_case(tokens.touch_tokens, durable=False)

    # ---- blobs and bundles ------------------------------------------------------------------------------------
    # A piece of a blob is not fsynced: a submit naming the blob commits later with fsync, and WAL keeps
    # commits in order.
    put_blob = use_case(blobs.put_blob, durable=False)
    get_blob = use_case(blobs.get_blob, durable=False)
    push_bundle = use_case(bundles.push_bundle, durable=True)
    list_bundles = use_case(bundles.list_bundles, durable=False)
    get_bundle = use_case(bundles.get_bundle, durable=False)

    # ---- periodic schedules (a firing submits jobs: durable) ---------------------------------------------------
    add_schedule = use_case(schedules.add_schedule, durable=True)
    list_schedules = use_case(schedules.list_schedules, durable=False)
    get_schedule = use_case(schedules.get_schedule, durable=False)
    change_schedule = use_case(schedules.change_schedule, durable=True)
    due_schedules = use_case(schedules.due_schedules, durable=False)
    next_slot_ms = use_case(schedules.next_slot_ms, durable=False)
    fire_schedules = use_case(schedules.fire_schedules, durable=True, changes=changes.fired)
