"""RabbitMQ: the broker session and topology, the outbox and its relay."""
