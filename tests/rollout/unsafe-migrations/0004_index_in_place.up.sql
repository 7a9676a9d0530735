-- Must be refused: an index built in place blocks every write to an existing table.
CREATE INDEX customers_by_email ON customers (email);
