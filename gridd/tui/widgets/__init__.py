"""The dashboard's widgets, one class per module. Each renders model state it is handed; none opens
connections except the jobs table, which pages through the broker's jobs on its own."""
