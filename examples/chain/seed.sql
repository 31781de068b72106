-- The table examples/chain/flow.yaml extracts (load it with `psql "$AF_TEST_PG_URL" -f seed.sql`).
DROP TABLE IF EXISTS chain_sales;
CREATE TABLE chain_sales (id int PRIMARY KEY, region text NOT NULL, amount numeric(10,2), sold_on date);
INSERT INTO chain_sales VALUES
  (1, 'north', 120.50, '2026-01-03'),
  (2, 'south', 80.00, '2026-01-04'),
  (3, 'east', 42.25, '2026-01-04'),
  (4, 'north', 17.00, '2026-01-05'),
  (5, 'west', NULL, '2026-01-06'),
  (6, 'Zürich', 3.50, NULL);
