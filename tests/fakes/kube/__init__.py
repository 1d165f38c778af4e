"""Parts of the test Kubernetes API server (`tests/fakes/kube_api.py`): the schemas it reads
(`schemas`), server-side apply's field sets and merge (`ssa`), what it writes on create,
update and apply (`writes`), HTTP plumbing (`http`) and object builders (`builders`)."""
