// grpc-js-xds reads GRPC_XDS_EXPERIMENTAL_RBAC when it loads; a test that validates
// listeners with RBAC imports this first (a proxyless server sets the variable itself).
process.env['GRPC_XDS_EXPERIMENTAL_RBAC'] = 'true';
