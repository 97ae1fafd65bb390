export { bindGrpcServer, serveGrpcHealth, stopGrpcServer } from './grpc-server';
export { requestIdInterceptor } from './request-id-interceptor';
