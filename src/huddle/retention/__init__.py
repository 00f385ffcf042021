"""Data retention: deleting what is older than HUDDLE_DATA_RETENTION_DAYS (or a workspace's
shorter limit) in a background job; see :mod:`huddle.retention.service`."""
