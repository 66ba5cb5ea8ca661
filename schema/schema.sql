-- The part of the live RugbyCodex schema that the edge workers touch
-- (../shared/CONTRACT.md section 2). Tests load this file into a throwaway
-- PostgreSQL cluster; the enum values are the live ones.

CREATE TYPE job_type AS ENUM ('transcode', 'cleanup', 'other');
CREATE TYPE job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'canceled');
CREATE TYPE media_asset_status AS ENUM (
    'intent', 'uploading', 'uploaded', 'processing', 'ready', 'failed', 'interrupted'
);
CREATE TYPE processing_stage AS ENUM (
    'uploaded', 'transcoding', 'transcoded', 'complete', 'failed'
);

CREATE TABLE media_assets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    bucket text,
    storage_path text NOT NULL,
    file_name text,
    mime_type text,
    file_size_bytes bigint CHECK (file_size_bytes >= 0),
    duration_seconds double precision,
    status media_asset_status NOT NULL DEFAULT 'uploaded',
    processing_stage processing_stage NOT NULL DEFAULT 'uploaded',
    transcode_progress integer NOT NULL DEFAULT 0
        CHECK (transcode_progress BETWEEN 0 AND 100),
    streaming_ready boolean NOT NULL DEFAULT false,
    thumbnail_path text,
    thumbnail_sprite_path text,
    thumbnail_vtt_path text,
    thumbnail_frame_count integer,
    thumbnail_interval_seconds double precision,
    thumbnail_width integer,
    thumbnail_height integer,
    base_org_storage_path text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    media_asset_id uuid REFERENCES media_assets (id) ON DELETE CASCADE,
    type job_type NOT NULL,
    state job_state NOT NULL DEFAULT 'queued',
    progress numeric NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    error_code text,
    error_message text,
    attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    payload jsonb,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);

CREATE TABLE media_cleanup_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    media_asset_id uuid NOT NULL,
    bucket text,
    storage_path text,
    created_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    error text
);

CREATE INDEX media_cleanup_jobs_pending ON media_cleanup_jobs (created_at)
    WHERE processed_at IS NULL;

-- The admin dashboard's device list: one row per machine, upserted by name.
CREATE TYPE compute_device_status AS ENUM ('online', 'offline', 'degraded');

CREATE TABLE compute_devices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    hostname text,
    device_type text DEFAULT 'jetson_orin',
    status compute_device_status NOT NULL DEFAULT 'offline',
    last_heartbeat_at timestamptz,
    cpu_cores integer,
    memory_total_mb integer,
    memory_used_mb integer,
    cpu_utilization numeric,
    gpu_utilization numeric,
    temperature_c numeric,
    gpu_model text,
    cuda_version text,
    jetpack_version text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- No triggers: the live schema shows none (CONTRACT.md), so nothing moves
-- updated_at on its own. The workers write it themselves, from the
-- database's clock ('now()'), wherever it serves as a lease.
