CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    api_id      bigint NOT NULL REFERENCES apis(id) ON DELETE CASCADE,
    key_hash    bytea NOT NULL,
    expires_at  timestamptz
);
CREATE INDEX api_keys_api_id ON api_keys (api_id);
