/**
 * @since 0.1.0
 */
export * as Lease from "./Lease.ts"
export * as LeaseRepository from "./LeaseRepository.ts"
