import { Inject } from '@nestjs/common';

/** The injection token of the application's Mesh. */
export const MESH = Symbol.for('meshlet.nestjs.mesh');
/** The injection token of the options MeshletModule was given. */
export const MESHLET_OPTIONS = Symbol.for('meshlet.nestjs.options');

/** `constructor(@InjectMesh() private readonly mesh: Mesh)`. */
export const InjectMesh = (): ParameterDecorator => Inject(MESH);
