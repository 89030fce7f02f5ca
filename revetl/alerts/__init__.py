"""Alerts: one message per change of state, to Slack, a signed webhook or email (README "Alerts").

    settings.py   `alerts:` in revetl.yml: channels and rules, strictly validated (imported by config.py)
    rules.py      what a sync run, a build or the collector says about each rule: failing or not, and why
    store.py      what each channel was last told, per rule and subject: a table in the warehouse
                  (`revetl_state.alert_states`, migration 5), or a file beside the collector's log
    channels.py   the messages (Slack, webhook JSON signed with HMAC-SHA256, email) and sending them
    notify.py     observations -> changes of state -> messages; a channel that fails is one warning
    hooks.py      what the commands call: after each sync run, after a build, and the collector's watcher

Nothing is imported here: config.py imports `revetl.alerts.settings`, and the rest loads when it runs.
"""
