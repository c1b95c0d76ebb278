export { MeshletExceptionFilter } from './meshlet-exception-filter.js';
export { MeshletModule, type MeshletModuleAsyncOptions, type MeshletModuleOptions } from './meshlet-module.js';
export { InjectMesh, MESH, MESHLET_OPTIONS } from './tokens.js';
