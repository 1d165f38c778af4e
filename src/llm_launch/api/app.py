"""The FastAPI application: wires settings, store, backend, services and routers together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from llm_launch import __version__
from llm_launch.api.metrics import ControlPlaneMetrics
from llm_launch.api.openapi import install_security
from llm_launch.api.routers import endpoints, health, inference, models
from llm_launch.api.wiring import cancel_and_wait, install_guarded_inference
from llm_launch.backends.base import Backend
from llm_launch.runtime.gc_pacing import keep_collections_short
from llm_launch.services.deletes import Teardowns
from llm_launch.services.endpoints import EndpointService
from llm_launch.services.inference import InferenceRouter
from llm_launch.services.reconciler import Reconciler
from llm_launch.services.routing_table import RoutingTable
from llm_launch.settings import Settings
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository


def make_backend(settings: Settings) -> Backend | None:
    if settings.backend == "none":
        return None
    if settings.backend == "local":
        from llm_launch.backends.local.backend import LocalBackend
        from llm_launch.backends.local.ports import PortAllocator

        ports = PortAllocator(*settings.local_ports)
        return LocalBackend(
            settings.data_dir,
            settings.engine_mode,
            ports,
            settings.checkpoint_roots,
            pass_env=settings.pass_env,
            max_processes=settings.local_max_processes,
            hang_restart_s=settings.plan_options().hang_restart_s,
            drain_grace_s=settings.plan_options().drain_grace_s,
        )
    if settings.backend == "kubernetes":
        from llm_launch.backends.kubernetes.backend import KubernetesBackend
        from llm_launch.backends.kubernetes.config import KubernetesConfig, WeightsVolume

        if settings.installation is not None:  # serve: the file and the flags over it
            return KubernetesBackend(
                settings.installation.kubernetes,
                kubeconfig=settings.kubeconfig,
                timing=settings.installation.timing,
            )
        config = KubernetesConfig(
            plan_options=settings.plan_options(),
            namespace=settings.kubernetes_namespace,
            control_plane_id=settings.kubernetes_control_plane_id,
            catalog=settings.catalog,
            weights_volume=WeightsVolume.parse(settings.kubernetes_weights_volume),
        )
        return KubernetesBackend(config, kubeconfig=settings.kubeconfig)
    raise ValueError(f"unknown backend {settings.backend!r}; use local, kubernetes or none")


async def _reconcile(
    settings: Settings, backend: Backend, reconciler: Callable[[], Reconciler]
) -> None:
    """Reconcile for as long as the server runs. The local backend runs one process, so it
    reconciles at once. On Kubernetes several replicas serve the API and inference, and
    only the one holding the Lease reconciles (a fresh Reconciler each time it takes the
    lead); connecting starts the backend's watches on every replica, so that followers
    know the ready groups and route inference to them."""
    from llm_launch.backends.kubernetes.backend import KubernetesBackend

    if not isinstance(backend, KubernetesBackend):
        await reconciler().run_forever()
        return
    from llm_launch.backends.kubernetes.leader import LeaseSettings, default_identity

    lease = LeaseSettings(
        namespace=settings.kubernetes_namespace,
        name=settings.leader_lease_name or f"llm-launch-{settings.kubernetes_control_plane_id}",
        identity=settings.leader_identity or default_identity(),
        duration_s=settings.leader_lease_duration_s,
        renew_deadline_s=settings.leader_renew_deadline_s,
        retry_period_s=settings.leader_retry_period_s,
    )
    elector = await backend.elector(lease)
    await elector.run(lambda: reconciler().run_forever())


def create_app(
    settings: Settings,
    backend_factory: Callable[[Settings], Backend | None] = make_backend,
    *,
    pace_gc: bool = False,
) -> FastAPI:
    """The app; `backend_factory` lets tests run it over an in-memory backend. `pace_gc`
    (the `serve` command's) keeps the process's garbage collections short
    (runtime/gc_pacing.py): it changes the collector of the whole process, so an app
    created inside another program (tests) leaves it alone."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = open_database(settings.database_url)
        repository = EndpointRepository(engine)
        backend = backend_factory(settings)
        start = getattr(backend, "start", None)
        if start is not None:  # the Kubernetes backend checks its cluster first (crd_check.py)
            await start()
        # The service and the reconciler share the background teardowns of deletes.
        teardowns = Teardowns(repository, backend)
        # The inference routes' endpoints, in memory: filled now, then kept current by the
        # endpoint service, the reconciler and a periodic refresh (other processes' writes).
        table = RoutingTable(repository)
        await table.refresh()
        refreshing = asyncio.create_task(table.run_forever(), name="routing-table")
        pacing_gc = (
            asyncio.create_task(keep_collections_short(), name="gc-pacing") if pace_gc else None
        )
        app.state.routing_table = table
        metrics = ControlPlaneMetrics(table, reconciler=backend is not None)
        app.state.metrics = metrics
        app.state.endpoints = EndpointService(
            repository,
            settings.catalog,
            backend,
            teardowns,
            quotas=settings.quotas,
            checkpoint_roots=settings.checkpoint_roots,
            routing_table=table,
        )
        app.state.inference = InferenceRouter(
            table, backend, timeout_s=settings.inference_timeout_s
        )
        reconciling = None
        if backend is not None:

            def reconciler() -> Reconciler:
                return Reconciler(
                    repository,
                    backend,
                    settings.reconcile_interval_s,
                    teardowns=teardowns,
                    routing_table=table,
                    observer=metrics,
                )

            reconciling = asyncio.create_task(
                _reconcile(settings, backend, reconciler), name="reconciler"
            )
        try:
            yield
        finally:
            await cancel_and_wait(refreshing)
            await cancel_and_wait(pacing_gc)
            await cancel_and_wait(reconciling)
            await teardowns.close()  # unfinished ones are finished by the next server
            if backend is not None:
                await backend.close()
            await app.state.inference.close()
            await engine.dispose()

    app = FastAPI(
        title="llm-launch",
        version=__version__,
        description="Self-hosted control plane for LLM inference endpoints (Launch LLM API).",
        lifespan=lifespan,
    )
    install_security(app)
    # Outermost, the guard (keys, bounded body); inside it, the completion routes' lean path.
    install_guarded_inference(
        app,
        settings.api_keys,
        max_request_bytes=settings.max_request_bytes,
        header_timeout_s=settings.header_timeout_s,
    )
    app.include_router(health.router)
    app.include_router(endpoints.router)
    app.include_router(inference.router)
    app.include_router(models.router)
    return app
