// The shim's version, as `-v` prints it and Task.Connect reports it.
export const SHIM_VERSION = '0.1.0';
