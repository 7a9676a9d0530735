DROP TABLE credit_transactions;
DROP TABLE customer_credits;
DROP TABLE subscription_charges;
