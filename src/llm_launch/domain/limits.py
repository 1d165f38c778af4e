"""Every bound on what a request may hold, as named constants, each with why it is that value.

`domain.validation` checks specs against them (so a spec built anywhere obeys them),
`api.schemas` publishes the integer bounds in /openapi.json, and `domain.quantity` refuses
quantities beyond their range. Many owners share one server: a bound keeps one owner's
request from costing the others (processes, memory, database errors, argv overflow).
"""

from __future__ import annotations

from decimal import Decimal

KIB = 1024
MIB = 1024 * KIB

# --- Integers -------------------------------------------------------------------------
# Groups per endpoint (min_workers, max_workers). Each is at least one process (local
# backend) or pod, so this caps what one request can make the server start; it also stays
# far inside the int32 of the database columns and of Kubernetes' replica counts
# (3000000000 was a PostgreSQL "integer out of range", a 500).
MAX_WORKERS = 1000
# Concurrent requests per worker (the autoscaling target); an engine batch is far smaller.
MAX_PER_WORKER = 10_000
# Nodes in one group (a LeaderWorkerSet's size): 64 nodes x 8 GPUs = 512 GPUs per replica.
MAX_NODES_PER_WORKER = 64
# GPUs per node (the hardware catalog bounds each type further) and shards over them.
MAX_GPUS_PER_NODE = 64
MAX_NUM_SHARDS = MAX_GPUS_PER_NODE
# Launch's queue settings (stored and returned; llm-launch serves no queue-based endpoints):
# how long a queued task may wait before it expires, and how long a worker holds a message
# before the queue hands it to another. A week is longer than any caller waits for an
# inference; 12 hours is SQS's largest visibility timeout, the most any of Launch's queue
# services allows.
MAX_TASK_EXPIRES_SECONDS = 7 * 24 * 3600
MAX_QUEUE_MESSAGE_TIMEOUT_SECONDS = 12 * 3600
# Any integer inside a free-form value (engine_args, metadata, billing_tags) must fit a
# signed 64-bit integer: engines parse them as C longs, PostgreSQL's jsonb/bigint and
# JavaScript clients lose or refuse larger ones.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# --- Kubernetes quantities -------------------------------------------------------------
# A quantity is text first: at most this many characters ("800Gi", "1.5e3").
MAX_QUANTITY_CHARS = 64
# Decimal exponents ("1e3") beyond this are refused before any arithmetic: 1e9999999
# overflowed Python's Decimal (a 500). 10^18 (E) is the largest suffix Kubernetes has.
MAX_QUANTITY_EXPONENT = 18
# Per pod: far above any real node, far below what breaks the arithmetic or Kubernetes.
MAX_CPUS = Decimal(4096)
MAX_MEMORY_BYTES = Decimal(2**46)  # 64Ti
MAX_STORAGE_BYTES = Decimal(2**50)  # 1Pi

# --- Strings that reach argv, the environment or paths ----------------------------------
# Linux caps one argv or environment string at 128 KiB (MAX_ARG_STRLEN); all of these stay
# well under it, and together under the 2 MiB (ARG_MAX-ish) a whole command may use.
MAX_CHAT_TEMPLATE_BYTES = 64 * KIB  # passed in the environment (LLM_LAUNCH_CHAT_TEMPLATE)
MAX_PATH_BYTES = 4096  # PATH_MAX: checkpoint_path
MAX_URL_BYTES = 2048  # default_callback_url: the de facto URL limit of browsers and proxies
MAX_HOOKS = 16  # post_inference_hooks entries
MAX_HOOK_CHARS = 256
MAX_SHORT_TEXT_CHARS = 256  # gpu_type, quantize, source, endpoint_type, inference_framework
MAX_LABELS = 64  # labels land on every Kubernetes object of the endpoint

# engine_args: each becomes argv items of the engine command.
MAX_ENGINE_ARGS = 128  # keys
MAX_ENGINE_ARG_KEY_CHARS = 128
MAX_ENGINE_ARG_VALUE_BYTES = 16 * KIB  # one value, serialized as JSON (>= its argv size)
MAX_ENGINE_ARGS_BYTES = 64 * KIB  # all of them, serialized as JSON

# --- Free-form JSON (metadata, billing_tags, engine_args values) -----------------------
# Nesting is walked iteratively and refused beyond this depth: deep documents hit Python's
# recursion limit in the JSON encoder and decoder (a 450-deep metadata was stored and then
# every GET and list answered 500).
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 64 * KIB  # one field, serialized as JSON

# --- Error messages --------------------------------------------------------------------
# An error quotes at most this many characters of a bad value, so a megabyte-long value
# does not come back a megabyte-long error.
MAX_ECHO_CHARS = 64
