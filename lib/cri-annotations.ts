// The CRI plugin's annotations on an OCI spec that kata-ts acts on (containerd's
// pkg/cri/annotations): which pod a container belongs to, and whether it is the pod's
// sandbox (pause) container. In a module of their own so that `shim start` can read
// them without loading the daemon.
export const CRI_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';
export const CRI_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
