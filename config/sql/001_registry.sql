-- Households, meters, devices, tariffs and GDPR records.
CREATE TABLE households (
    household_id text PRIMARY KEY,
    timezone     text NOT NULL DEFAULT 'Europe/Paris',
    archetype    text,
    tariff_id    text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz
);

CREATE TABLE meters (
    meter_id     text PRIMARY KEY,
    household_id text NOT NULL REFERENCES households (household_id),
    max_power_w  double precision NOT NULL CHECK (max_power_w > 0),
    exports      boolean NOT NULL DEFAULT false,
    tic_mode     text CHECK (tic_mode IN ('historique', 'standard')),
    installed_at timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);
CREATE INDEX meters_household_idx ON meters (household_id);

CREATE TABLE devices (
    device_id    text PRIMARY KEY,
    meter_id     text REFERENCES meters (meter_id),
    firmware     text,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz
);

CREATE TABLE tariffs (
    tariff_id    text PRIMARY KEY,
    name         text NOT NULL,
    currency     text NOT NULL DEFAULT 'EUR',
    periods      jsonb NOT NULL DEFAULT '[]'::jsonb
);

CREATE TABLE gdpr_requests (
    request_id   bigserial PRIMARY KEY,
    household_id text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('access', 'erasure', 'rectification', 'portability')),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'refused')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE consents (
    household_id text NOT NULL REFERENCES households (household_id),
    purpose      text NOT NULL,
    granted      boolean NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (household_id, purpose)
);
