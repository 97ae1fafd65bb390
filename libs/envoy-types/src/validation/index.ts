export { ProtoValidator, type ProtoValidatorOptions, type Violation } from './proto-validator';
