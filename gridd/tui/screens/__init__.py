"""The dashboard's screens: the dashboard itself, a job's detail, and the confirmation dialog."""
