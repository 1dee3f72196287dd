export { Firecracker } from './firecracker';
export { firecrackerPaths } from './vm-config';
