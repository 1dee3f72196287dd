// Our own description of the part of a VMM's REST API that our drivers use, and the
// validator the fake VMMs run on every request. A small JSON-Schema-like subset:
// exactly the constructs the upstream OpenAPI/Swagger files use for these endpoints.
// Runs inside the fake VMM process too, so it imports nothing.

export type Schema = StringSchema | IntegerSchema | BooleanSchema | ArraySchema | ObjectSchema;

export interface StringSchema {
  type: 'string';
  enum?: readonly string[];
  pattern?: RegExp;
}
export interface IntegerSchema {
  type: 'integer';
  minimum?: number;
  maximum?: number;
}
export interface BooleanSchema {
  type: 'boolean';
}
export interface ArraySchema {
  type: 'array';
  items: Schema;
}
export interface ObjectSchema {
  type: 'object';
  properties: Record<string, Schema>;
  required?: readonly string[];
  /** Stated on every object: whether fields outside `properties` are allowed. */
  additionalProperties: boolean;
}

export type HttpMethod = 'GET' | 'PUT' | 'PATCH';

export interface Endpoint {
  method: HttpMethod;
  /** Path template; a `{name}` segment is a parameter checked against `params[name]`. */
  path: string;
  params?: Record<string, StringSchema>;
  /** The request body's schema; without it the request must carry no body. */
  body?: ObjectSchema;
  /** A body field that must repeat the path parameter of the same name. */
  bodyRepeatsParam?: string;
  /** The status of a successful answer. */
  success: 200 | 204;
}

export interface ApiDescription {
  name: string;
  /** Upstream file and commit the description was checked against. */
  checkedAgainst: string;
  endpoints: readonly Endpoint[];
}

/** Every violation of `schema` by `value`, each prefixed by its JSON path. */
export function violations(schema: Schema, value: unknown, where = 'body'): string[] {
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return [`${where}: must be a string, got ${describe(value)}`];
      if (schema.enum && !schema.enum.includes(value)) return [`${where}: must be one of ${schema.enum.join(', ')}, got ${JSON.stringify(value)}`];
      if (schema.pattern && !schema.pattern.test(value)) return [`${where}: must match ${schema.pattern}, got ${JSON.stringify(value)}`];
      return [];
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return [`${where}: must be an integer, got ${describe(value)}`];
      if (schema.minimum !== undefined && value < schema.minimum) return [`${where}: must be at least ${schema.minimum}, got ${value}`];
      if (schema.maximum !== undefined && value > schema.maximum) return [`${where}: must be at most ${schema.maximum}, got ${value}`];
      return [];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${where}: must be a boolean, got ${describe(value)}`];
    case 'array':
      if (!Array.isArray(value)) return [`${where}: must be an array, got ${describe(value)}`];
      return value.flatMap((item, index) => violations(schema.items, item, `${where}[${index}]`));
    case 'object':
      return objectViolations(schema, value, where);
  }
}

function objectViolations(schema: ObjectSchema, value: unknown, where: string): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${where}: must be an object, got ${describe(value)}`];
  const fields = value as Record<string, unknown>;
  const found: string[] = [];
  for (const name of schema.required ?? []) {
    if (!(name in fields)) found.push(`${where}.${name}: required`);
  }
  for (const [name, field] of Object.entries(fields)) {
    const fieldSchema = schema.properties[name];
    if (fieldSchema) found.push(...violations(fieldSchema, field, `${where}.${name}`));
    else if (!schema.additionalProperties) found.push(`${where}.${name}: unknown field (known: ${Object.keys(schema.properties).join(', ')})`);
  }
  return found;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

export type RequestCheck =
  | { ok: true; endpoint: Endpoint; params: Record<string, string> }
  | { ok: false; status: 400 | 404 | 405; problems: string[] };

/** Finds the endpoint a request addresses and checks its parameters and body. */
export function checkRequest(api: ApiDescription, method: string, path: string, body: unknown): RequestCheck {
  const byPath = api.endpoints.map((endpoint) => ({ endpoint, params: matchPath(endpoint.path, path) })).filter((m) => m.params);
  if (byPath.length === 0) return { ok: false, status: 404, problems: [`no endpoint ${path}`] };
  const match = byPath.find((m) => m.endpoint.method === method);
  if (!match) return { ok: false, status: 405, problems: [`${path} takes ${byPath.map((m) => m.endpoint.method).join(', ')}, not ${method}`] };
  const { endpoint } = match;
  const params = match.params as Record<string, string>;
  const problems = Object.entries(endpoint.params ?? {}).flatMap(([name, schema]) => violations(schema, params[name], `path {${name}}`));
  if (endpoint.body) {
    if (body === undefined) problems.push('body: required');
    else problems.push(...violations(endpoint.body, body));
    const repeated = endpoint.bodyRepeatsParam;
    if (repeated && body && (body as Record<string, unknown>)[repeated] !== params[repeated]) {
      problems.push(`body.${repeated}: must equal the path's {${repeated}} ${JSON.stringify(params[repeated])}`);
    }
  } else if (body !== undefined) {
    problems.push('body: this endpoint takes none');
  }
  return problems.length > 0 ? { ok: false, status: 400, problems } : { ok: true, endpoint, params };
}

function matchPath(template: string, path: string): Record<string, string> | undefined {
  const want = template.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const param = /^\{(\w+)\}$/.exec(want[i]);
    if (param) params[param[1]] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return undefined;
  }
  return params;
}
