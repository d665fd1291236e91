DROP TABLE apis;
DROP TABLE tenants;
