"""`llm-launch plan` and `llm-launch render`: what a create request becomes (the launch
plan as JSON, the Kubernetes objects as YAML), without a server.

The body is checked as `POST /v1/llm/model-endpoints` checks it (`create_spec`: the API's
request model, its error conversion, then the domain's rules), so a body the API refuses,
a misspelt field among them, is refused here with the same messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llm_launch.cli.base import (
    WEIGHTS_VOLUME_HELP,
    app,
    explained,
    fail,
    parse_weights_volume,
    read_body,
)
from llm_launch.config.loader import load_hardware_catalog

if TYPE_CHECKING:
    from llm_launch.domain.hardware import HardwareCatalog
    from llm_launch.domain.spec import EndpointSpec

BodyFile = Annotated[Path, typer.Option("-f", "--file", help="Create-request body (JSON).")]
IpFamilyOption = Annotated[str, typer.Option(help="auto, ipv4 or ipv6")]
SocketIfnameOption = Annotated[str, typer.Option(help="NCCL/Gloo network interface")]
ClusterDomainOption = Annotated[str | None, typer.Option(help="appended to the leader's name")]
CatalogOption = Annotated[Path | None, typer.Option(envvar="LLM_LAUNCH_HARDWARE_CATALOG")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="LLM_LAUNCH_CONFIG",
        help="installation configuration (YAML; deploy/kubernetes/config.example.yaml); "
        "the options here win over it",
    ),
]


def create_spec(file: Path, catalog: HardwareCatalog) -> EndpointSpec:
    """The spec of the create request in `file`, or InvalidRequest as the API answers it."""
    from llm_launch.api.schemas import CreateEndpointRequest, request_fields
    from llm_launch.domain.spec_builder import build_spec

    fields = request_fields(
        CreateEndpointRequest, read_body(file), rules=lambda parsed: build_spec(parsed, catalog)
    )
    return build_spec(fields, catalog)


def _plan_options(ip_family: str, socket_ifname: str, cluster_domain: str | None) -> Any:
    from llm_launch.engines.options import PlanOptions
    from llm_launch.engines.plan import IpFamily

    return PlanOptions(
        ip_family=IpFamily(ip_family), socket_ifname=socket_ifname, cluster_domain=cluster_domain
    )


@app.command()
def plan(
    file: BodyFile,
    ip_family: IpFamilyOption = "auto",
    socket_ifname: SocketIfnameOption = "eth0",
    cluster_domain: ClusterDomainOption = None,
    hardware_catalog: CatalogOption = None,
) -> None:
    """Print the launch plan of a create request (roles, commands, env, ports) as JSON."""
    from llm_launch.engines.planner import plan_launch

    with explained():
        spec = create_spec(file, load_hardware_catalog(hardware_catalog))
        launch_plan = plan_launch(spec, _plan_options(ip_family, socket_ifname, cluster_domain))
    typer.echo(json.dumps(launch_plan.to_dict(), indent=2))


@app.command()
def render(
    file: BodyFile,
    namespace: Annotated[
        str | None, typer.Option(help="namespace of the objects (default: default)")
    ] = None,
    owner: Annotated[str, typer.Option(help="owner label of the objects")] = "local",
    endpoint_id: Annotated[
        str | None, typer.Option(help="endpoint id label; default: derived from owner and name")
    ] = None,
    ip_family: Annotated[str | None, typer.Option(help="auto (default), ipv4 or ipv6")] = None,
    socket_ifname: Annotated[
        str | None, typer.Option(help="NCCL/Gloo network interface (default: eth0)")
    ] = None,
    cluster_domain: ClusterDomainOption = None,
    image_repository: Annotated[
        str | None, typer.Option(help="engine image repository (default: ours for the framework)")
    ] = None,
    weights_volume: Annotated[
        str | None, typer.Option(help=f"{WEIGHTS_VOLUME_HELP} (default: emptyDir)")
    ] = None,
    hardware_catalog: CatalogOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Print the Kubernetes objects of a create request as multi-document YAML."""
    from llm_launch.backends.kubernetes.render import (
        EndpointIdentity,
        derived_endpoint_id,
        render_spec,
        to_yaml,
        token_secret_notice,
    )
    from llm_launch.config.kubernetes import ConfigFileError, load_installation_config
    from llm_launch.domain.names import label_value_problem

    for option, value in (("--owner", owner), ("--endpoint-id", endpoint_id or "")):
        if label_value_problem(value):
            raise fail(f"{option}: {label_value_problem(value)}")
    with explained():
        catalog = load_hardware_catalog(hardware_catalog)
        spec = create_spec(file, catalog)
        flags = {
            "kubernetes.namespace": namespace,
            "kubernetes.plan_options.ip_family": ip_family,
            "kubernetes.plan_options.socket_ifname": socket_ifname,
            "kubernetes.plan_options.cluster_domain": cluster_domain,
            f"kubernetes.image_repositories.{spec.inference_framework}": image_repository,
            "kubernetes.weights_volume": weights_volume,
        }
        if weights_volume is not None:
            parse_weights_volume(weights_volume)  # refused as the flag, with its forms
        overrides = {key: value for key, value in flags.items() if value is not None}
        try:
            installation = load_installation_config(config_file, overrides, {"catalog": catalog})
        except ConfigFileError as exc:
            raise fail(str(exc)) from exc
        config = installation.kubernetes
        identity = EndpointIdentity(
            name=spec.name,
            endpoint_id=endpoint_id or derived_endpoint_id(owner, spec.name),
            owner=owner,
        )
        objects = render_spec(spec, config, identity)
    typer.echo(token_secret_notice(spec, config, identity) + to_yaml(objects), nl=False)
