// Paths inside the guest that the shim writes into specs and the agent serves.
// One definition, because both sides must agree on them.

/** Where the agent mounts the sandbox's shared directory (virtio-9p). */
export const GUEST_SHARED_DIR = '/run/kata-containers/shared';

/** The shared directory's tag (9p mount_tag, virtio-fs tag), Kata's. */
export const SHARED_FS_TAG = 'kataShared';

/**
 * A namespace path under this directory means "the pod sandbox container's
 * namespace of this type" (e.g. `<dir>/ipc`); the agent resolves it to the pause
 * container's /proc/<pid>/ns entry. CRI gives host paths there, which mean nothing
 * in the guest.
 */
export const SANDBOX_NS_DIR = '/run/kata-containers/sandbox/ns';

/** The pod's shared memory: one guest tmpfs that every container's /dev/shm binds. */
export const SANDBOX_SHM_DIR = '/run/kata-containers/sandbox/shm';

/** CRI's pod-shared /dev/shm size (kubelet's default for the pause container's shm). */
export const SANDBOX_SHM_SIZE = '64m';
