DROP TABLE subscription_items;
DROP TABLE subscriptions;
