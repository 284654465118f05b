/* The RelaxNG schemas, embedded as NUL-terminated strings (see Makefile). */
	.section .rodata
	.global sm_schema_domainsnapshot
sm_schema_domainsnapshot:
	.incbin "schemas/domainsnapshot.rng"
	.byte 0
	.global sm_schema_migration_cookie
sm_schema_migration_cookie:
	.incbin "schemas/migration-cookie.rng"
	.byte 0
	.section .note.GNU-stack,"",@progbits
