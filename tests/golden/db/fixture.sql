-- The SQLite fixture of the db golden suite: awkward values for byte-for-byte comparison
-- of db_extract / db_extract_stream / db_fetch_small with the reference.
CREATE TABLE awkward (
    id INTEGER PRIMARY KEY,
    name TEXT,
    amount REAL,
    big INTEGER,
    day TEXT,
    ts TEXT,
    flag INTEGER,
    data BLOB
);
INSERT INTO awkward VALUES
  (1, 'plain', 0.1, 9223372036854775807, '2024-02-29', '2024-01-02 03:04:05', 1, X'00ff27'),
  (2, 'héllo wörld ✓ 日本 😀', 1e20, -9223372036854775808, '1999-12-31', '2000-01-01T00:00:00.123456', 0, NULL),
  (3, 'tab' || char(9) || 'inside', -2.5, 0, NULL, NULL, NULL, X''),
  (4, 'line1' || char(10) || 'line2' || char(13) || char(10) || 'line3', 1e16, 42, '2024-01-01', NULL, 1, X'0a09'),
  (5, 'say "hi", it''s', 1.5e-7, -1, NULL, NULL, NULL, NULL),
  (6, '', 3.0, NULL, '', '', 0, NULL),
  (7, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (8, 'back\slash;semi|pipe', 123456.789, 1000000000000000, NULL, NULL, NULL, NULL),
  (9, '"', 1e15, 7, NULL, NULL, NULL, 'text in a blob column'),
  (10, 'a,b', 9e999, 8, NULL, NULL, NULL, NULL),
  (11, '''quoted''', -9e999, 9, NULL, NULL, NULL, NULL),
  (12, 'x\y', 0.0001, 10, NULL, NULL, NULL, NULL),
  (13, 'end', 1e-05, 11, NULL, NULL, NULL, NULL);
