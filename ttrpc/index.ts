export { Code, codeName } from './codes';
export { TtrpcError, statusFromError } from './errors';
export {
  DEFAULT_MAX_MESSAGE_SIZE,
  FLAG_NO_DATA,
  FLAG_REMOTE_CLOSED,
  FLAG_REMOTE_OPEN,
  FrameDecoder,
  FrameType,
  HEADER_LENGTH,
  encodeFrame,
} from './frame';
export type { DecodedItem, Frame, FrameHeader } from './frame';
export { TO_OBJECT_OPTIONS } from './messages';
export type { Metadata } from './messages';
export { TtrpcServer } from './server';
export type {
  BidiStreamHandler,
  CallContext,
  ClientStreamHandler,
  CloseOptions,
  Handler,
  ListenOptions,
  SendFn,
  ServerOptions,
  ServerStreamHandler,
  ServiceImpl,
  UnaryHandler,
} from './server';
export { TtrpcClient } from './client';
export type { CallOptions, ClientOptions, RequestSource, ServiceRef } from './client';
