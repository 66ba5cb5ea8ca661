"""The local stand-in for the live system, shared by the tests, the demo and
the benchmarks: PostgreSQL behind a PostgREST-compatible gateway, moto in
server mode for S3 and SQS, a fault proxy, and clips made by FFmpeg."""
