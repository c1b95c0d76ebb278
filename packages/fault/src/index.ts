export {
  applyFault,
  FAULT_HEADER,
  type FaultDecision,
  FaultInjector,
  faultAttributes,
  faultInterceptor,
  NO_FAULT,
  type ServiceFaults,
} from './fault-injector.js';
export {
  FAULT_LIMITS,
  FAULT_SECTION_MODES,
  type FaultRule,
  type FaultSection,
  faultRule,
  faultRuleKind,
  parseFaultSection,
} from './fault-rule.js';
