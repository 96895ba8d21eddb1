"""`hemovision up` / `hemovision down`: the whole system as local processes on one machine.

Order: preflight (PostgreSQL, Redis, free ports) -> database created if missing ->
migrations as one-off steps -> model registry seeded from the model base -> every
service started in dependency order, each only after the ones it needs answer their
health check -> the URL is printed. From then on a process that exits is restarted
after a backoff (1 s doubling to 30 s, back to 1 s after a minute up), each restart
printed with the exit status. Ctrl-C / SIGTERM (or `hemovision down` from another
shell) stops everything in reverse order, restarting nothing: SIGTERM to each process
group, then SIGKILL after the grace period, so no process is left behind.
`--tls` (HV_TLS=1) makes a local CA under var/secrets/tls and runs every process with
its own certificate: mutual TLS on every gRPC hop (docs/deployment.md).

    plan.py        what runs: the configuration, every process's environment, the start order
    readiness.py   may it start (preflight), is a process ready (gRPC health / HTTP)
    supervisor.py  runs the plan: one-off steps, start, watch and restart, stop; `down` from another shell
    cli.py         the `up` / `down` arguments, for `hemovision` and `python -m hemovision_devstack`
"""
