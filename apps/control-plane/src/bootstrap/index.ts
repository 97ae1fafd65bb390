export {
  buildBootstrap,
  DEFAULT_ADMIN_PORT,
  renderBootstrap,
  XDS_CLUSTER_NAME,
  type BootstrapFormat,
  type BootstrapInput,
} from './render-bootstrap';
export { bootstrapPortCollision, type PortCollision } from './port-collisions';
