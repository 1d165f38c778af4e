"""A simulated cluster inside the test API server: what LeaderWorkerSet, the Deployment
controller, kube-scheduler and the kubelet do to pods, so tests exercise real group
lifecycles instead of hand-built pod lists.

    cluster = FakeCluster(kube_api, nodes=[Node("gpu-0", gpus=8), Node("gpu-1", gpus=8)])
    cluster.start()                       # a thread ticking every `tick_s`
    cluster.behave("*", ready_ticks=3)    # how the kubelet runs matching pods
    cluster.fail("llm-x-0-1")             # OOMKilled; LWS recreates the group
    cluster.stop()

## What the simulation imitates, and the document each behaviour follows

- LeaderWorkerSet controller (`lws.py`; kubernetes-sigs/lws leaderworkerset_controller.go,
  pod_controller.go, pod_webhook.go, pkg/utils/pod): leader and worker pods, their names,
  labels, annotations and LWS_* environment, the headless Service, startupPolicy,
  RecreateGroupOnPodRestart (foreground deletion of the group's leader), scale down from
  the highest group, a one-group-at-a-time rollout, and status with its conditions.
- Deployment controller (`deployment.py`; kubernetes pkg/controller/deployment): pods
  named with pod-template-hash, replicas, a rolling update bounded by maxSurge and
  maxUnavailable, status and the Available/Progressing conditions.
- kube-scheduler (`scheduler.py`; kubernetes pkg/scheduler): taints and tolerations,
  nodeSelector, cpu/memory/ephemeral-storage/nvidia.com/gpu requests against allocatable,
  the FitError message with the preemption verdicts, FailedScheduling and Scheduled events.
- kubelet (`kubelet.py`; pkg/kubelet status manager, docs "Pod Lifecycle"): pod phases,
  the pod conditions, container states (ContainerCreating, ErrImagePull/ImagePullBackOff,
  running, terminated, CrashLoopBackOff), restartCount and lastState, previous logs, and the
  Unhealthy/BackOff/Failed events, on rules a test sets per pod name or role.
- Events (`cluster.py`): core/v1 Events about pods and LeaderWorkerSets, a repeated
  reason and message aggregated into `count` (client-go tools/record EventCorrelator).

## What it does not imitate

StatefulSets, ReplicaSets and ControllerRevisions are not stored (pods are owned by the
LeaderWorkerSet, their leader pod or the Deployment, so deletion cascades the same way);
Node objects are not served (nodes are configuration); no probes run (rules say when a pod
turns Ready); no graceful termination (a deleted pod goes as the API server's garbage
collector removes it); no preemption, priorities, pod affinity or topology spread; no HPA
controller; progressDeadlineSeconds never expires; time is counted in ticks.
"""

from tests.fakes.kube_cluster.cluster import FakeCluster
from tests.fakes.kube_cluster.model import GPU, Behaviour, Node, Taint

__all__ = ["GPU", "Behaviour", "FakeCluster", "Node", "Taint"]
