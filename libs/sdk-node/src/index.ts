export { CALLER_KEY_ID_METADATA_KEY, CALLER_METADATA_KEY, meshServerInterceptor, meshTokenInterceptor } from './grpc-interceptors';
export { MeshTokenClient, MeshTokenError, type MeshTokenClientOptions } from './token-client';
export { MeshTokenRejected, MeshTokenVerifier, type MeshTokenVerifierOptions, type VerifiedCaller } from './token-verifier';
