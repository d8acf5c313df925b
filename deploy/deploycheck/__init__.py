"""``make deploy-check``'s consistency checks: the deployment files against the code.

hadolint, kubernetes-validate and check-jsonschema check each file against its own
format; this package checks what they cannot: that every process the files start runs a
command this project installs, with ``COUNTER_*`` variables that ``service/settings.py``
reads and accepts, listening on the ports the files declare and probe, and stopping
within the grace periods the files give it. The variable list is read from the settings
module itself, so a new setting needs no change here.

Run from the repository root: ``python -m deploy.deploycheck``.
"""
