"""The local backend: each replica group of an endpoint runs as processes on this machine,
with LeaderWorkerSet semantics (ranks, leader address, whole-group restart)."""
