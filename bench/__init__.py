"""`make bench`: fan-out of the board at scale, the compose stack next to a bare asyncio server.

Modules, one job each: `protocol` (the texts and frames), `stats` (percentiles and summaries),
`receivers` (WebSocket clients in worker processes), `poster` (posts at a steady rate),
`bare_server` (the in-memory reference), `procs` (CPU and memory of the servers' processes),
`targets` (where a server is and who its processes are), `scenario` (one size, one server),
`idle` (how many idle sockets a server holds), `report` (JSON -> Markdown and PNG), `__main__`
(the command line). bench/README.md explains how to run it and read it.
"""
