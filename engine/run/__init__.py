"""The run: its context, plan estimates, run directory, ledger, record, the one driver, verification,
merge into the cube and manifest, and status."""
