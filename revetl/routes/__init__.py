"""Routes: collected events to destinations as they arrive (DESIGN 9, README "Routes").

    config.py       routes/NAME.yml -> RouteConfig (file and line for every problem)
    expression.py   the `where:` condition language
    mapping.py      a route's decisions on one event: admit, and map to a Segment-spec message
    feed.py         the collector's write-ahead log, read from a route's position
    store.py        a route's cursor, dead letters and status on disk
    deliver.py      one route's delivery loop: batches, in-flight window, ordered commit, backlog bounds
    router.py       `revetl routes run`: every route, their status, the log's clean-up
    replay.py       `revetl routes replay`: the warehouse's events (or dead letters) through a route
    check.py        what `routes check`, `status` and `dead-letters` print
    destinations/   stream destinations (webhook, Amplitude), entry-point group `revetl.stream_destinations`
"""
