; A small ALFWorld problem written for this project's offline tests (not from the ALFWorld dataset).
; Same format as ALFWorld's initial_state.pddl files: ALFRED-style object ids (Type_bar_x_bar_y_bar_z, the
; "_bar_" etc. are how ALFWorld mangles "|", "-", "+" and "."), the domain's predicates, and the task type's goal
; from ALFWorld's goal library. tests/test_real_envs.py turns it into a playable game with alfworld-generate.
; Kitchen. Goal: put a cool mug on the shelf.
; (In play: mug 1 in cabinet 2, winebottle 1 in cabinet 3, apple 1 and kettle 1 on countertop 1, cup 1 in
; microwave 1, bowl 1 on shelf 1; cabinets, fridge and microwave start closed. The mug must be cooled with
; fridge 1 first.)
(define (problem plan_trial_T0005)
    (:domain alfred)
    (:objects
        agent1 - agent
        CabinetType - rtype
        CounterTopType - rtype
        FridgeType - rtype
        MicrowaveType - rtype
        ShelfType - rtype
        SinkBasinType - rtype
        CoffeeMachineType - rtype
        MugType - otype
        BowlType - otype
        AppleType - otype
        KettleType - otype
        CupType - otype
        WineBottleType - otype
        KnifeType - otype
        ButterKnifeType - otype
        Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40 - object
        Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 - object
        Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40 - object
        Kettle_bar__minus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_60 - object
        Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 - object
        WineBottle_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 - object
        Cabinet_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 - receptacle
        Cabinet_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_50 - receptacle
        Cabinet_bar__plus_01_dot_50_bar__plus_00_dot_40_bar__minus_02_dot_20 - receptacle
        CounterTop_bar__minus_01_dot_20_bar__plus_00_dot_95_bar__minus_01_dot_50 - receptacle
        Fridge_bar__plus_02_dot_20_bar__plus_00_dot_00_bar__minus_01_dot_00 - receptacle
        Microwave_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 - receptacle
        Shelf_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 - receptacle
        Sink_bar__plus_00_dot_40_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin - receptacle
        CoffeeMachine_bar__minus_02_dot_00_bar__plus_00_dot_90_bar__minus_00_dot_20 - receptacle
        loc_bar__minus_1_bar_1_bar_1_bar_30 - location
        loc_bar__minus_7_bar__minus_6_bar_2_bar_60 - location
        loc_bar_2_bar__minus_7_bar_2_bar__minus_30 - location
        loc_bar_6_bar__minus_6_bar_2_bar_60 - location
        loc_bar__minus_5_bar__minus_5_bar_2_bar_45 - location
        loc_bar_8_bar__minus_4_bar_1_bar_45 - location
        loc_bar__minus_1_bar__minus_8_bar_2_bar_0 - location
        loc_bar_8_bar_2_bar_1_bar_30 - location
        loc_bar_2_bar__minus_8_bar_2_bar_45 - location
        loc_bar__minus_7_bar__minus_1_bar_3_bar_45 - location
    )
    (:init
        (atLocation agent1 loc_bar__minus_1_bar_1_bar_1_bar_30)
        (receptacleType Cabinet_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 CabinetType)
        (receptacleType Cabinet_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_50 CabinetType)
        (receptacleType Cabinet_bar__plus_01_dot_50_bar__plus_00_dot_40_bar__minus_02_dot_20 CabinetType)
        (receptacleType CounterTop_bar__minus_01_dot_20_bar__plus_00_dot_95_bar__minus_01_dot_50 CounterTopType)
        (receptacleType Fridge_bar__plus_02_dot_20_bar__plus_00_dot_00_bar__minus_01_dot_00 FridgeType)
        (receptacleType Microwave_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 MicrowaveType)
        (receptacleType Shelf_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 ShelfType)
        (receptacleType Sink_bar__plus_00_dot_40_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin SinkBasinType)
        (receptacleType CoffeeMachine_bar__minus_02_dot_00_bar__plus_00_dot_90_bar__minus_00_dot_20 CoffeeMachineType)
        (receptacleAtLocation Cabinet_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 loc_bar__minus_7_bar__minus_6_bar_2_bar_60)
        (receptacleAtLocation Cabinet_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_50 loc_bar_2_bar__minus_7_bar_2_bar__minus_30)
        (receptacleAtLocation Cabinet_bar__plus_01_dot_50_bar__plus_00_dot_40_bar__minus_02_dot_20 loc_bar_6_bar__minus_6_bar_2_bar_60)
        (receptacleAtLocation CounterTop_bar__minus_01_dot_20_bar__plus_00_dot_95_bar__minus_01_dot_50 loc_bar__minus_5_bar__minus_5_bar_2_bar_45)
        (receptacleAtLocation Fridge_bar__plus_02_dot_20_bar__plus_00_dot_00_bar__minus_01_dot_00 loc_bar_8_bar__minus_4_bar_1_bar_45)
        (receptacleAtLocation Microwave_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 loc_bar__minus_1_bar__minus_8_bar_2_bar_0)
        (receptacleAtLocation Shelf_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 loc_bar_8_bar_2_bar_1_bar_30)
        (receptacleAtLocation Sink_bar__plus_00_dot_40_bar__plus_00_dot_90_bar__minus_02_dot_60_bar_SinkBasin loc_bar_2_bar__minus_8_bar_2_bar_45)
        (receptacleAtLocation CoffeeMachine_bar__minus_02_dot_00_bar__plus_00_dot_90_bar__minus_00_dot_20 loc_bar__minus_7_bar__minus_1_bar_3_bar_45)
        (openable Cabinet_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (openable Cabinet_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_50)
        (openable Cabinet_bar__plus_01_dot_50_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (openable Fridge_bar__plus_02_dot_20_bar__plus_00_dot_00_bar__minus_01_dot_00)
        (openable Microwave_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (objectType Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40 MugType)
        (objectType Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 BowlType)
        (objectType Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40 AppleType)
        (objectType Kettle_bar__minus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_60 KettleType)
        (objectType Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 CupType)
        (objectType WineBottle_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 WineBottleType)
        (pickupable Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40)
        (pickupable Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60)
        (pickupable Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40)
        (pickupable Kettle_bar__minus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_60)
        (pickupable Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (pickupable WineBottle_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (coolable Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40)
        (coolable Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60)
        (coolable Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40)
        (coolable Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (coolable WineBottle_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (heatable Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40)
        (heatable Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60)
        (heatable Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40)
        (heatable Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (cleanable Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40)
        (cleanable Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60)
        (cleanable Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40)
        (cleanable Kettle_bar__minus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_60)
        (cleanable Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (inReceptacle Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40 Cabinet_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_50)
        (inReceptacle Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 Shelf_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60)
        (inReceptacle Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40 CounterTop_bar__minus_01_dot_20_bar__plus_00_dot_95_bar__minus_01_dot_50)
        (inReceptacle Kettle_bar__minus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_60 CounterTop_bar__minus_01_dot_20_bar__plus_00_dot_95_bar__minus_01_dot_50)
        (inReceptacle Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 Microwave_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50)
        (inReceptacle WineBottle_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 Cabinet_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20)
        (objectAtLocation Mug_bar__plus_00_dot_50_bar__plus_01_dot_90_bar__minus_02_dot_40 loc_bar_2_bar__minus_7_bar_2_bar__minus_30)
        (objectAtLocation Bowl_bar__plus_02_dot_10_bar__plus_00_dot_90_bar__plus_00_dot_60 loc_bar_8_bar_2_bar_1_bar_30)
        (objectAtLocation Apple_bar__minus_01_dot_00_bar__plus_00_dot_97_bar__minus_01_dot_40 loc_bar__minus_5_bar__minus_5_bar_2_bar_45)
        (objectAtLocation Kettle_bar__minus_01_dot_30_bar__plus_00_dot_95_bar__minus_01_dot_60 loc_bar__minus_5_bar__minus_5_bar_2_bar_45)
        (objectAtLocation Cup_bar__minus_00_dot_30_bar__plus_01_dot_70_bar__minus_02_dot_50 loc_bar__minus_1_bar__minus_8_bar_2_bar_0)
        (objectAtLocation WineBottle_bar__minus_01_dot_80_bar__plus_00_dot_40_bar__minus_02_dot_20 loc_bar__minus_7_bar__minus_6_bar_2_bar_60)
        (canContain CabinetType MugType)
        (canContain CabinetType BowlType)
        (canContain CabinetType KettleType)
        (canContain CabinetType CupType)
        (canContain CabinetType WineBottleType)
        (canContain CounterTopType MugType)
        (canContain CounterTopType BowlType)
        (canContain CounterTopType AppleType)
        (canContain CounterTopType KettleType)
        (canContain CounterTopType CupType)
        (canContain CounterTopType WineBottleType)
        (canContain FridgeType MugType)
        (canContain FridgeType BowlType)
        (canContain FridgeType AppleType)
        (canContain FridgeType CupType)
        (canContain FridgeType WineBottleType)
        (canContain MicrowaveType MugType)
        (canContain MicrowaveType BowlType)
        (canContain MicrowaveType AppleType)
        (canContain MicrowaveType CupType)
        (canContain ShelfType MugType)
        (canContain ShelfType BowlType)
        (canContain ShelfType KettleType)
        (canContain ShelfType CupType)
        (canContain ShelfType WineBottleType)
        (canContain SinkBasinType MugType)
        (canContain SinkBasinType BowlType)
        (canContain SinkBasinType AppleType)
        (canContain SinkBasinType KettleType)
        (canContain SinkBasinType CupType)
        (canContain CoffeeMachineType MugType)
    )
    (:goal
        (and
            (exists (?r - receptacle)
                (exists (?o - object)
                    (and
                        (coolable ?o)
                        (objectType ?o MugType)
                        (receptacleType ?r ShelfType)
                        (isCool ?o)
                        (inReceptacle ?o ?r)
                    )
                )
            )
        )
    )
)
