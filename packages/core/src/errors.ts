/**
 * Every error Meshlet throws is a MeshletError with a stable `code`, so callers can
 * branch on `err.code` (or `instanceof`) instead of parsing messages.
 */
export class MeshletError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The service is known to the registry but has no healthy instance to send to. */
export class NoInstanceError extends MeshletError {
  static readonly code = 'MESHLET_NO_INSTANCE';
  readonly service: string;

  constructor(service: string, detail = 'no healthy instance') {
    super(NoInstanceError.code, `${service}: ${detail}. Check that its instances are registered and passing their health checks.`);
    this.service = service;
  }
}

/** A name was asked for that no registry knows. */
export class UnknownServiceError extends MeshletError {
  static readonly code = 'MESHLET_UNKNOWN_SERVICE';
  readonly service: string;

  constructor(service: string) {
    super(UnknownServiceError.code, `${service}: no such service in the registry. Check the name and that the service has registered.`);
    this.service = service;
  }
}

/**
 * A call to a service not followed yet, while the mesh already follows its cap of
 * destinations (`destinations.max`) and every one of them has a call in flight: none can
 * be released to make room. Refused before anything is sent; retry later, or raise the cap.
 */
export class TooManyDestinationsError extends MeshletError {
  static readonly code = 'MESHLET_TOO_MANY_DESTINATIONS';
  readonly service: string;
  readonly max: number;

  constructor(service: string, max: number) {
    super(
      TooManyDestinationsError.code,
      `${service}: not called, this mesh already follows ${max} destinations (destinations.max), each with a call in flight. Raise destinations.max, or call fewer services at once.`,
    );
    this.service = service;
    this.max = max;
  }
}

/** A tag header could not be decoded. Inbound middleware logs it and goes on without the tags. */
export class BadTagHeaderError extends MeshletError {
  static readonly code = 'MESHLET_BAD_TAG_HEADER';
  readonly header: string;

  constructor(header: string, reason: string) {
    super(BadTagHeaderError.code, `${header}: ${reason}`);
    this.header = header;
  }
}

/** The module-level fetch was called before any mesh was created. */
export class NoMeshError extends MeshletError {
  static readonly code = 'MESHLET_NO_MESH';

  constructor() {
    super(NoMeshError.code, 'no mesh: call createMesh() before the module-level fetch, or use mesh.fetch');
  }
}
