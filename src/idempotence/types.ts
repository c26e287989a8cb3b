/** The idempotent producer's identity, as InitProducerId returns it and produce takes it. */
export interface ProducerIdentity {
  producerId: number;
  producerEpoch: number;
}

/**
 * Idempotence for one produce call: every record goes to one partition, in one batch whose header
 * carries producerId, producerEpoch and baseSequence; record i gets sequence baseSequence + i.
 */
export interface IdempotenceInput extends ProducerIdentity {
  baseSequence: number;
}
