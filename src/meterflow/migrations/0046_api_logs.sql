-- API logs (`GET /api/v1/api_logs`): every write request an organization's API key made (POST,
-- PUT, PATCH, DELETE under /api/v1, events excepted: they are the high-volume path and are
-- read back from their topic), with its body and the answer, so that on call one can see who
-- changed what and what the API said. Kept METERFLOW_API_LOG_RETENTION_DAYS days.
CREATE TABLE api_logs (
    request_id       uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    api_version      text NOT NULL DEFAULT 'v1',
    client           text NOT NULL,
    http_method      text NOT NULL,
    http_status      integer NOT NULL,
    request_origin   text NOT NULL,
    request_path     text NOT NULL,
    request_body     jsonb NOT NULL,
    request_response jsonb,
    logged_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_logs_organization ON api_logs (organization_id, logged_at DESC);
CREATE INDEX api_logs_logged_at ON api_logs (logged_at);
