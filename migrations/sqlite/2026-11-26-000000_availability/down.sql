DROP TABLE availability_changes;
DROP TABLE slots;
DROP TABLE providers;
