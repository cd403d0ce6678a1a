-- An extension is a request for more time on the live grants of an earlier request.
ALTER TABLE access_request ADD COLUMN extends_request_id TEXT;
CREATE INDEX access_request_extends_idx ON access_request (extends_request_id);
