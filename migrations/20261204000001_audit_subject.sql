-- The request page reads the events of one request and its grants.
CREATE INDEX audit_event_subject_idx ON audit_event (subject_id, seq);
