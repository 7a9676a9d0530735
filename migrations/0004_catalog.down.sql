DROP TABLE prices;
-- dialect postgres
DROP FUNCTION prices_fixed();
-- dialect end
DROP TABLE products;
