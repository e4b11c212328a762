"""The loyalty service: tariffs, promo codes, groups, purchases and rejections over gRPC."""
