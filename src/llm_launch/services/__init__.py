"""Use cases: create, update and delete endpoints; reconcile status; route inference."""
