export { CloudHypervisor } from './cloud-hypervisor';
export { clhPaths, type CloudHypervisorOptions } from './vm-config';
