// What the store can refuse, as types callers can map to HTTP/gRPC statuses.

export class MeshStoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The record does not exist (HTTP 404). */
export class NotFoundError extends MeshStoreError {
  constructor(
    readonly key: string,
    what: string,
  ) {
    super(`${what} not found`);
  }
}

/** A create found the record already there (HTTP 409). */
export class AlreadyExistsError extends MeshStoreError {
  constructor(
    readonly key: string,
    what: string,
  ) {
    super(`${what} already exists`);
  }
}

/** A conditional write lost: the record changed since `expected` was read (HTTP 412). */
export class RevisionMismatchError extends MeshStoreError {
  constructor(
    readonly key: string,
    readonly expectedModRevision: string,
    /** The record's current modRevision, or undefined when it no longer exists. */
    readonly actualModRevision: string | undefined,
  ) {
    super(`${key} changed: expected modRevision ${expectedModRevision}, found ${actualModRevision ?? 'no record'}`);
  }
}

/** A delete refused because other services still declare this one as a dependency (HTTP 409). */
export class HasDependentsError extends MeshStoreError {
  constructor(
    readonly key: string,
    /** The services that still depend on it, sorted. */
    readonly dependents: string[],
  ) {
    super(`${key} is still a dependency of ${dependents.join(', ')}`);
  }
}

/** A stored value or a value to store does not satisfy its schema. */
export class InvalidRecordError extends MeshStoreError {
  constructor(
    readonly key: string,
    readonly issues: string[],
  ) {
    super(`invalid record at ${key}: ${issues.join('; ')}`);
  }
}

/** A service claimed an ingress host that another team owns (HTTP 409); an admin may assign it. */
export class HostOwnedError extends MeshStoreError {
  constructor(
    readonly key: string,
    readonly host: string,
    /** The team that owns the host. */
    readonly owner: string,
  ) {
    super(`ingress host ${host} belongs to team ${owner}`);
  }
}
