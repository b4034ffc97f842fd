; A small ALFWorld problem written for this project's offline tests (not from the ALFWorld dataset).
; Same format as ALFWorld's initial_state.pddl files: ALFRED-style object ids (Type_bar_x_bar_y_bar_z, the
; "_bar_" etc. are how ALFWorld mangles "|", "-", "+" and "."), the domain's predicates, and the task type's goal
; from ALFWorld's goal library. tests/test_real_envs.py turns it into a playable game with alfworld-generate.
; Kitchen. Goal: put a hot egg on the dining table.
; (In play: egg 1 in fridge 1, potato 1 on countertop 1, lettuce 1 on diningtable 1, cup 1 in cabinet 2,
; tomato 1 in garbagecan 1, pot 1 on stoveburner 1; fridge, microwave and cabinets start closed. The egg
; must be heated with microwave 1 first.)
(define (problem plan_trial_T0004)
    (:domain alfred)
    (:objects
        agent1 - agent
        FridgeType - rtype
        MicrowaveType - rtype
        CounterTopType - rtype
        DiningTableType - rtype
        CabinetType - rtype
        SinkBasinType - rtype
        StoveBurnerType - rtype
        GarbageCanType - rtype
        EggType - otype
        PotatoType - otype
        CupType - otype
        PotType - otype
        LettuceType - otype
        TomatoType - otype
        KnifeType - otype
        ButterKnifeType - otype
        Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50 - object
        Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00 - object
        Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30 - object
        Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40 - object
        Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80 - object
        Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90 - object
        Fridge_bar__minus_02_dot_30_bar__plus_00_dot_00_bar__plus_00_dot_50 - receptacle
        Microwave_bar__plus_01_dot_30_bar__plus_01_dot_60_bar__minus_02_dot_50 - receptacle
        CounterTop_bar__plus_01_dot_30_bar__plus_00_dot_90_bar__minus_01_dot_00 - receptacle
        DiningTable_bar__minus_00_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_80 - receptacle
        Cabinet_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_20 - receptacle
        Cabinet_bar__plus_00_dot_60_bar__plus_00_dot_30_bar__minus_02_dot_20 - receptacle
        Sink_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin - receptacle
        StoveBurner_bar__plus_00_dot_20_bar__plus_00_dot_92_bar__minus_02_dot_40 - receptacle
        GarbageCan_bar__plus_02_dot_00_bar__plus_00_dot_00_bar__plus_01_dot_90 - receptacle
        loc_bar_1_bar_1_bar_0_bar_30 - location
        loc_bar__minus_7_bar_2_bar_3_bar_45 - location
        loc_bar_5_bar__minus_7_bar_2_bar__minus_30 - location
        loc_bar_5_bar__minus_4_bar_1_bar_45 - location
        loc_bar__minus_2_bar_4_bar_0_bar_30 - location
        loc_bar__minus_3_bar__minus_7_bar_2_bar_60 - location
        loc_bar_2_bar__minus_7_bar_2_bar_60 - location
        loc_bar__minus_6_bar__minus_8_bar_2_bar_45 - location
        loc_bar_1_bar__minus_8_bar_2_bar_45 - location
        loc_bar_7_bar_7_bar_0_bar_60 - location
    )
    (:init
        (atLocation agent1 loc_bar_1_bar_1_bar_0_bar_30)
        (receptacleType Fridge_bar__minus_02_dot_30_bar__plus_00_dot_00_bar__plus_00_dot_50 FridgeType)
        (receptacleType Microwave_bar__plus_01_dot_30_bar__plus_01_dot_60_bar__minus_02_dot_50 MicrowaveType)
        (receptacleType CounterTop_bar__plus_01_dot_30_bar__plus_00_dot_90_bar__minus_01_dot_00 CounterTopType)
        (receptacleType DiningTable_bar__minus_00_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_80 DiningTableType)
        (receptacleType Cabinet_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_20 CabinetType)
        (receptacleType Cabinet_bar__plus_00_dot_60_bar__plus_00_dot_30_bar__minus_02_dot_20 CabinetType)
        (receptacleType Sink_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin SinkBasinType)
        (receptacleType StoveBurner_bar__plus_00_dot_20_bar__plus_00_dot_92_bar__minus_02_dot_40 StoveBurnerType)
        (receptacleType GarbageCan_bar__plus_02_dot_00_bar__plus_00_dot_00_bar__plus_01_dot_90 GarbageCanType)
        (receptacleAtLocation Fridge_bar__minus_02_dot_30_bar__plus_00_dot_00_bar__plus_00_dot_50 loc_bar__minus_7_bar_2_bar_3_bar_45)
        (receptacleAtLocation Microwave_bar__plus_01_dot_30_bar__plus_01_dot_60_bar__minus_02_dot_50 loc_bar_5_bar__minus_7_bar_2_bar__minus_30)
        (receptacleAtLocation CounterTop_bar__plus_01_dot_30_bar__plus_00_dot_90_bar__minus_01_dot_00 loc_bar_5_bar__minus_4_bar_1_bar_45)
        (receptacleAtLocation DiningTable_bar__minus_00_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_80 loc_bar__minus_2_bar_4_bar_0_bar_30)
        (receptacleAtLocation Cabinet_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_20 loc_bar__minus_3_bar__minus_7_bar_2_bar_60)
        (receptacleAtLocation Cabinet_bar__plus_00_dot_60_bar__plus_00_dot_30_bar__minus_02_dot_20 loc_bar_2_bar__minus_7_bar_2_bar_60)
        (receptacleAtLocation Sink_bar__minus_01_dot_50_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin loc_bar__minus_6_bar__minus_8_bar_2_bar_45)
        (receptacleAtLocation StoveBurner_bar__plus_00_dot_20_bar__plus_00_dot_92_bar__minus_02_dot_40 loc_bar_1_bar__minus_8_bar_2_bar_45)
        (receptacleAtLocation GarbageCan_bar__plus_02_dot_00_bar__plus_00_dot_00_bar__plus_01_dot_90 loc_bar_7_bar_7_bar_0_bar_60)
        (openable Fridge_bar__minus_02_dot_30_bar__plus_00_dot_00_bar__plus_00_dot_50)
        (openable Microwave_bar__plus_01_dot_30_bar__plus_01_dot_60_bar__minus_02_dot_50)
        (openable Cabinet_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_20)
        (openable Cabinet_bar__plus_00_dot_60_bar__plus_00_dot_30_bar__minus_02_dot_20)
        (objectType Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50 EggType)
        (objectType Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00 PotatoType)
        (objectType Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30 CupType)
        (objectType Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40 PotType)
        (objectType Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80 LettuceType)
        (objectType Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90 TomatoType)
        (pickupable Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50)
        (pickupable Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (pickupable Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30)
        (pickupable Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40)
        (pickupable Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80)
        (pickupable Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90)
        (heatable Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50)
        (heatable Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (heatable Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30)
        (heatable Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90)
        (cleanable Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50)
        (cleanable Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (cleanable Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30)
        (cleanable Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40)
        (cleanable Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80)
        (cleanable Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90)
        (coolable Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50)
        (coolable Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00)
        (coolable Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30)
        (coolable Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40)
        (coolable Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80)
        (coolable Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90)
        (inReceptacle Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50 Fridge_bar__minus_02_dot_30_bar__plus_00_dot_00_bar__plus_00_dot_50)
        (inReceptacle Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00 CounterTop_bar__plus_01_dot_30_bar__plus_00_dot_90_bar__minus_01_dot_00)
        (inReceptacle Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30 Cabinet_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_20)
        (inReceptacle Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40 StoveBurner_bar__plus_00_dot_20_bar__plus_00_dot_92_bar__minus_02_dot_40)
        (inReceptacle Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80 DiningTable_bar__minus_00_dot_40_bar__plus_00_dot_00_bar__plus_01_dot_80)
        (inReceptacle Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90 GarbageCan_bar__plus_02_dot_00_bar__plus_00_dot_00_bar__plus_01_dot_90)
        (objectAtLocation Egg_bar__minus_02_dot_20_bar__plus_00_dot_60_bar__plus_00_dot_50 loc_bar__minus_7_bar_2_bar_3_bar_45)
        (objectAtLocation Potato_bar__plus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_00 loc_bar_5_bar__minus_4_bar_1_bar_45)
        (objectAtLocation Cup_bar__minus_00_dot_80_bar__plus_00_dot_30_bar__minus_02_dot_30 loc_bar__minus_3_bar__minus_7_bar_2_bar_60)
        (objectAtLocation Pot_bar__plus_00_dot_20_bar__plus_00_dot_94_bar__minus_02_dot_40 loc_bar_1_bar__minus_8_bar_2_bar_45)
        (objectAtLocation Lettuce_bar__minus_00_dot_40_bar__plus_00_dot_80_bar__plus_01_dot_80 loc_bar__minus_2_bar_4_bar_0_bar_30)
        (objectAtLocation Tomato_bar__plus_02_dot_00_bar__plus_00_dot_20_bar__plus_01_dot_90 loc_bar_7_bar_7_bar_0_bar_60)
        (canContain FridgeType EggType)
        (canContain FridgeType PotatoType)
        (canContain FridgeType CupType)
        (canContain FridgeType PotType)
        (canContain FridgeType LettuceType)
        (canContain FridgeType TomatoType)
        (canContain MicrowaveType EggType)
        (canContain MicrowaveType PotatoType)
        (canContain MicrowaveType CupType)
        (canContain MicrowaveType TomatoType)
        (canContain CounterTopType EggType)
        (canContain CounterTopType PotatoType)
        (canContain CounterTopType CupType)
        (canContain CounterTopType PotType)
        (canContain CounterTopType LettuceType)
        (canContain CounterTopType TomatoType)
        (canContain DiningTableType EggType)
        (canContain DiningTableType PotatoType)
        (canContain DiningTableType CupType)
        (canContain DiningTableType PotType)
        (canContain DiningTableType LettuceType)
        (canContain DiningTableType TomatoType)
        (canContain CabinetType CupType)
        (canContain CabinetType PotType)
        (canContain SinkBasinType EggType)
        (canContain SinkBasinType PotatoType)
        (canContain SinkBasinType CupType)
        (canContain SinkBasinType PotType)
        (canContain SinkBasinType LettuceType)
        (canContain SinkBasinType TomatoType)
        (canContain StoveBurnerType PotType)
        (canContain GarbageCanType EggType)
        (canContain GarbageCanType PotatoType)
        (canContain GarbageCanType LettuceType)
        (canContain GarbageCanType TomatoType)
    )
    (:goal
        (and
            (exists (?r - receptacle)
                (exists (?o - object)
                    (and
                        (heatable ?o)
                        (objectType ?o EggType)
                        (receptacleType ?r DiningTableType)
                        (isHot ?o)
                        (inReceptacle ?o ?r)
                    )
                )
            )
        )
    )
)
