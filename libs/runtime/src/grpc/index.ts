export { bindGrpcServer, serveGrpcHealth, stopGrpcServer } from './grpc-server';
